from lakehub.ingest.server import main

main()
