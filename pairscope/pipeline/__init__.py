"""The run: a command's specification (``spec``, built and checked by ``config``), the
preflight that resolves it into a plan (``preflight``), the named steps that decode,
teacher-force and summarise each task (``steps``), the run directory they write
(``runs``) and the teacher-forced passes (``teacher``); ``requests_file`` reads
``pairscope generate --input``."""
