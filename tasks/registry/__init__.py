"""MLflow side of lmpipe: tracking setup (tracking.py), the HF pyfuncs (hf_pyfunc.py for masked/causal LMs,
glue_pyfunc.py for GLUE classifiers), log/register/alias (core.py), GLUE evaluations on versions (evaluations.py)."""
