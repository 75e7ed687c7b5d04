from taskerino.cli import run

run()
