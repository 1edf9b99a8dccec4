"""Small helpers every room shares, with no DANet knowledge in them: whole-or-nothing file writes
(:mod:`.files`), where results and artifact folders may be written (:mod:`.result_files`,
:mod:`.artifact_dir`), whole-number checks (:mod:`.counts`), progress bars (:mod:`.progress`), and
facts about the machine (:mod:`.cpu`, :mod:`.versions`). Torch-free; they import nothing above
:mod:`danet_deploy.errors`."""
