"""Jobs: notebooks and scripts the hub runs as their owners, on a schedule or by hand, never
failing silently (see ``scheduler``); the contract with what runs an attempt is in ``base``."""
