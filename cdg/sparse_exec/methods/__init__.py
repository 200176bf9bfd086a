"""One module per gate method: how its sparse executor gets the gate decisions (and, for the
predictor methods, what it computes). ``cdg.sparse_exec.registry`` maps method names here."""
