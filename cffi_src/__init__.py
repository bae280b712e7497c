"""cffi declarations for build.py, one module per C header they describe (the pyca way).

Each module has ``INCLUDES`` (the C preamble that makes its declarations compile) and
``CDEF`` (what cffi is told of that header). Build-time only: nothing here is installed.
"""
