"""Training the ``danet_demo`` preset (``danet-train``): the run, from recipe to shipped weights
(:mod:`.loop`), and the DANet objective it minimises (:mod:`.loss`). Needs torch."""
