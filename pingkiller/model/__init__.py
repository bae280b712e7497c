"""pingkiller's values: what the rest of the package computes with and returns.

Pure Python: nothing here imports the compiled extensions, the binding or the pins, so
parsing, policies, results and errors can be used and tested anywhere.
"""
