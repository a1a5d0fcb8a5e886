"""The results format: what a row holds, what makes two rows one cell, and where files go.

schema   the results CSV: columns (documented here only), ResultRow, read and write
keys     cell key, fingerprint fields and metrics: what compare, noise and plots group by
layout   results/<host_id>/ paths, run ids, artifact bundles, the committed CSV lookup
"""
