"""The app marketplace: packaged, parameterised job templates."""
