"""`vkharp serve`: an OpenAI-compatible HTTP server over one model on one device.

  server.py    the command: socket, uvicorn, shutdown that drains
  app.py       the routes (FastAPI) and how a request becomes a job and an answer
  protocol.py  request schemas and their mapping onto GenerationSettings (what is taken, refused, ignored)
  prompts.py   requests to token ids (chat template, completion prompts), the context check
  worker.py    the one thread that owns the model; the bounded queue; the channel to the handlers
  answers.py   Steps to OpenAI objects, logprobs, the token_data extension
  sse.py       server-sent events framing
  guards.py    the API key check and the body size limit
  errors.py    OpenAI-style error objects
"""
