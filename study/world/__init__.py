"""The built-in bias-planted world: its words, corpus, tokenizer, pretrained teacher and tasks, built or unpacked."""
