"""MLflow side of lmpipe: tracking setup (tracking.py), the HF pyfunc (hf_pyfunc.py), log/register/alias (core.py)."""
