from lakehub.server.ingest.server import main

main()
