from rlfm.cli import main

main()
