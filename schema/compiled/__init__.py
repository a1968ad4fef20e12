"""The compiled read path: a query → ONE SQL statement whose JSON is the response ``data``.

``plan`` (validated operation → selection tree), ``sql`` (tree → statement), ``execute``
(the Strawberry extension running it, with a statement cache). ``with_compiled_reads``
is the one entry point the HTTP layer uses.
"""

from schema.compiled.execute import CompiledReads, compile_operation, with_compiled_reads

__all__ = ["CompiledReads", "compile_operation", "with_compiled_reads"]
