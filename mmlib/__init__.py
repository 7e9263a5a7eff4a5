"""mmlib: the small core behind the Multimodal Paradox book.

Modules
-------
- ``mmlib.data``      synthetic cohorts (in the real on-disk layouts) and the loaders that read them
- ``mmlib.artifacts`` atomic, parameter-keyed artifacts that chapters exchange
- ``mmlib.pipeline``  papermill execution of the chapters and the build of the book
- ``mmlib.book``      rendering of the executed chapters (Quarto when present, else Jupyter Book 1.x)
- ``mmlib.tables`` / ``mmlib.plots``  the tables and figures the chapters show
"""

__version__ = "0.1.0"
