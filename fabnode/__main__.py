from fabnode.cli import main

main()
