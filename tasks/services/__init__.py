"""Local services (`lmpipe services`): the servers and their processes."""
