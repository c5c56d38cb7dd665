"""Kept for AWS config files written before the move to :mod:`lakehub.singleuser`: their
``credential_process`` lines name this module (``python -m lakehub.credential_process NAME``)."""

if __name__ == "__main__":
    from lakehub.singleuser.credential_process import main

    raise SystemExit(main())
