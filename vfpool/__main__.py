from vfpool.cli.main import main

main()
