from bgedit_cli.cli.app import main

main()
