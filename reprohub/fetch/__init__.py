"""Bytes onto disk: streamed, hashed downloads; safe archive extraction; atomic writes and locks.

* :mod:`~reprohub.fetch.download` -- a URL to a file: sha256 in flight, retries, resume, atomic rename;
* :mod:`~reprohub.fetch.pump` -- the inline and threaded body pumps the downloader uses;
* :mod:`~reprohub.fetch.archive` -- safe, threaded zip extraction with a digest of the extracted tree;
* :mod:`~reprohub.fetch.fsutil` -- atomic writes, file locks, file hashing: the only place files are replaced.

Nothing here knows about repos, hubconf or lockfiles.
"""
