"""Background services of the control plane: the dispatcher and the reconciler."""
