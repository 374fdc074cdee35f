"""Source datasets: one module per dataset, each a ``romp_hydra.data.base.SourceDataset`` subclass.

Kept free of imports so that loading one source never imports (or fails on) the others.
"""
