"""Onboarding step D-3, the first load: every current customer relationship into KFR.

    export.py     the core system's export (CSV or one ID per line) → rows
    rules.py      what KFR takes: ID and date rules, the 10 MB limit, 250 IDs/s, 100 000/day
    dedup.py      duplicates among millions of IDs in bounded memory
    batchfile.py  batch files on disk: written in bounded pieces, read back in pieces
    build.py      ``batch build``: export → files, rejected lines, summary
    check.py      ``batch check``: files from elsewhere, by the same rules
    announce.py   the plan per day and the announcement to DSOP@bits.no
    upload.py     ``batch upload``: paced, resumable, never the same file twice
    confirm.py    ``batch confirm``: are the uploaded IDs visible in KFR?
"""
