#!/usr/bin/env sh
# The seed's curl examples, one per provider, plus a streaming one. The gateway must be running
# (npm run demo, or npm start with your keys.json). GATEWAY_URL defaults to http://localhost:8080.
GATEWAY_URL=${GATEWAY_URL:-http://localhost:8080}

echo '# mock (no provider account needed)'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer vk_demo" \
  -H "Content-Type: application/json" \
  -d '{"model": "demo-model", "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# OpenAI'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer vk_user1_openai" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# Anthropic (OpenAI format in, OpenAI format out)'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer vk_user2_anthropic" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# DeepSeek'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer vk_user3_deepseek" \
  -H "Content-Type: application/json" \
  -d '{"model": "deepseek-flash", "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# Streaming (mock)'
curl -sN "$GATEWAY_URL/v1/chat/completions" \
  -H "Authorization: Bearer vk_demo" \
  -H "Content-Type: application/json" \
  -d '{"model": "demo-model", "stream": true, "messages": [{"role": "user", "content": "Stream this, please"}]}'
