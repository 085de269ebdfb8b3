"""The networks (torch.nn.Module) and their losses, one module per model."""
