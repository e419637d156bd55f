"""One module per ticket system; each defines a `TicketIntegration` subclass whose `system` is the module name."""
