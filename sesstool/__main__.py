from sesstool.cli.main import run

run()
