"""TrustLLM ethics tasks: one module per dataset file."""
