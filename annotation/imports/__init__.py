"""Import examples from CSV, TSV and JSONL files: streaming, in bulk, all or nothing.

One ImportBatch row is the job's truth. Its file goes through these modules, each one importing
only those listed before it:

    errors    why a file or a row is not imported (ImportFailed, the Skip codes)
    formats   options; binary stream -> counted (bytes read, for progress) -> decoded records:
              CSV/TSV through a TextIOWrapper with errors="surrogateescape", so a byte that is
              not valid UTF-8 marks its own row (a lone surrogate) instead of failing the file;
              JSONL line by line with a strict decode and a cap on the line length
    rows      records -> (text, gold label, meta) or a reason to skip the row
    progress  the running import's counters, capped per-row report and live progress
    copy      chunks of TALLY_IMPORT_CHUNK_ROWS rows -> PostgreSQL: COPY into a temporary staging
              table, then one INSERT ... ON CONFLICT (project, text_hash) DO NOTHING that
              probes and inserts together; SQLite: de-duplicated by text_hash with one query
              per chunk, then one prepared INSERT per row. Either way the database sees this
              import's own, not yet committed, rows: that is how duplicates within the file are
              found without keeping every hash in memory. The model layer is bypassed.
    runs      one batch run in one transaction, start to finish (the Celery task, the command)
    jobs      creating batches from an upload and handing them to Celery (API, admin, command)

so that callers -> jobs -> annotation.tasks -> runs -> copy -> rows -> formats, one way.

Memory stays flat whatever the file's size: one chunk of rows, the capped per-row report and
the project's label names. The whole insert runs in one transaction, so a failure (a database
error, an exception, a killed process) leaves no examples behind; progress is published to the
Django cache (Redis) because the rows are invisible to others until the commit.
"""
