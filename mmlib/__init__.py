"""mmlib: the small core behind the Multimodal Paradox book.

Modules
-------
- ``mmlib.schema``      the layouts' facts: cohorts, modalities, prediction times, columns, ECG leads, display names
- ``mmlib.data``        synthetic cohorts (in the real on-disk layouts) and the loader that reads them;
                        ``mmlib.data.prepare``: chapter 01's cohorts from its parameters
- ``mmlib.reports``     report vocabulary and parsing: findings stated in a free-text report, reader thresholds
- ``mmlib.cxr_reader``  offline chest X-ray reader (measures the pixels, writes a report)
- ``mmlib.ecg_reader``  offline ECG reader (measures the signal, writes an interpretation)
- ``mmlib.hub``         finds a model in the local Hugging Face cache; never downloads
- ``mmlib.vlm``         GPU backends: Qwen2.5-VL (X-rays) and PULSE-7B (ECGs), local checkpoints only
- ``mmlib.text``        structured data -> pseudo-notes; transcription dispatch to the readers and backends
- ``mmlib.embed``       texts -> embedding matrix, with an on-disk cache
- ``mmlib.models``      fusion models: the paper's, the resilient masked-attention one, late fusion, a linear
                        decision layer; the logistic-regression baseline
- ``mmlib.train``       data for the models, seeded training, threshold policy, predictions tables, modality
                        orders and run plans
- ``mmlib.metrics``     performance and fairness metrics (scikit-learn, fairlearn) with bootstrap CIs; the
                        ``Summary`` of a set of runs (estimates, paired differences, steps)
- ``mmlib.missing``     missing modalities at inference: mask samplers, prediction under masks, the ``Sweep``
                        of conditions (chapters 05-06)
- ``mmlib.interference`` perturbing one modality, and consistency fine-tuning (chapter 07)
- ``mmlib.decision``    decision-layer weights, contributions and group shares (chapter 06)
- ``mmlib.findings``    every computed sentence and result table the book prints (chapters 03-08)
- ``mmlib.headlines``   the findings box each chapter opens with, and the preface's claims against them
- ``mmlib.attribution`` chapter 08's ground-truth lab: knobs switched one at a time, recovery by path
- ``mmlib.tables`` / ``mmlib.plots``  the tables (formatted for reading, wide ones in parts) and the figures
                        (each with a caption and alt text) the chapters show
- ``mmlib.targets``     the paper's reported results as checkable targets, and whether a run reproduces them
- ``mmlib.disclosure``  aggregates only for credentialed data: small-cell suppression of every shown table
- ``mmlib.artifacts``   atomic, parameter-keyed artifacts that chapters exchange
- ``mmlib.parameters``  the declared type and range of every chapter parameter, checked before a run
- ``mmlib.pipeline``    papermill execution of the chapters and the build of the book
- ``mmlib.book``        rendering of the executed chapters (Quarto when present, else Jupyter Book 1.x)
- ``mmlib.pdf``         the whole book as one PDF from the same executed chapters (pandoc -> Typst)
- ``mmlib.chapter``     the chapter API: a chapter's inputs by name, its declared artifacts

Imports follow the data flow (layout -> cohort -> texts -> embeddings -> models -> predictions -> metrics
-> findings and figures), never back and never in a cycle; ``tests/test_imports.py`` holds the order.
"""

__version__ = "0.1.0"
