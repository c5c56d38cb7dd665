from lakehub.server.ingest.server import main

if __name__ == "__main__":  # not in a process the receivers spawn (see encode.Encoder)
    main()
