"""Generation engines and the candidates they produce."""
