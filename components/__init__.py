"""cutover's components: one module per component, pure helpers beside them."""
