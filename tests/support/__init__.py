"""What the test suites share: constants, helpers and harnesses, each defined once.

Fixtures live in conftest files (the one nearest the tests that use them); test modules import
helpers from here, never from a conftest or from another test module.
"""
