from taskerino.cli import main

main()
