"""HTTP routers (thin: parse, authorise, call a data function, shape the response)."""
