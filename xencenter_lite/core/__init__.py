"""The pure core: model, plans, checks and job states. No Qt, no libvirt."""
