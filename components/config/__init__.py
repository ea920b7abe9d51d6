"""The stack's config: `<project>:*` values read into one typed, checked model, every problem at once.

- model.py: the frozen dataclasses the program uses (StackConfig and its sections), and Secret;
- load.py: `parse_config` (pure) and `load_config` (reads pulumi.Config), the project's name;
- checks.py: the value checks and the reader that records a problem per bad value;
- sections.py: one reader per section; cross_checks.py: the checks that span sections;
- provider_forms.py: values in the spelling the docker provider reads them back in;
- keys.py, reference.py: README's config reference table and its one source.

Imports nothing else of the program: every other package imports from here.
"""
