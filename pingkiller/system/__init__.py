"""Facts about this host that pingkiller acts on: capabilities, interfaces, what root may trust."""
