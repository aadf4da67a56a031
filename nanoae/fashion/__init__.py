"""The Fashion-MNIST application, built from the core and ``nanoae.train``.

    data.py       find, verify (SHA-256 of the decompressed bytes), parse and download the IDX files
    models.py     the composed models: Autoencoder, Classifier, ImageClassifier, Standardize
    metrics.py    reconstruction and classification scores, dead units, the t-SNE map's scores
    pca.py        the baselines: PCA as a linear autoencoder of two Dense layers, 5-NN of the pixels
    pipeline.py   the demo's steps: train the autoencoder, the heads, fine-tune, map the codes
    plots.py      the figures (matplotlib, Agg when there is no display)
    report.py     report.md and the README's results table from metrics.json
"""
