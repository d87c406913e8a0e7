from prevent.cli import app

app()
