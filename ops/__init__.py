"""Operations: settings, the application object that wires everything, the CLI."""
