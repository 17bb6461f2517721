from scaledql.cli import main

raise SystemExit(main())
