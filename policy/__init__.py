"""cutover's policy pack (run by `pulumi preview/up --policy-pack policy`): rules.py, pack.py."""
