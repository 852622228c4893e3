#!/usr/bin/env sh
# The seed's curl examples, one per provider, plus a streaming one. The gateway must be running
# (npm run demo, or npm start with your keys.json). GATEWAY_URL defaults to http://localhost:8080;
# OPENAI_VK, ANTHROPIC_VK and DEEPSEEK_VK are your virtual keys for each provider (the defaults
# are keys.example.json's, whose placeholder provider keys the providers refuse).
GATEWAY_URL=${GATEWAY_URL:-http://localhost:8080}
OPENAI_VK=${OPENAI_VK:-vk_user1_openai}
ANTHROPIC_VK=${ANTHROPIC_VK:-vk_user2_anthropic}
DEEPSEEK_VK=${DEEPSEEK_VK:-vk_user3_deepseek}

echo '# mock (no provider account needed)'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer vk_demo" \
  -H "Content-Type: application/json" \
  -d '{"model": "demo-model", "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# OpenAI'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer $OPENAI_VK" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# Anthropic (OpenAI format in, OpenAI format out)'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer $ANTHROPIC_VK" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# DeepSeek'
curl -s "$GATEWAY_URL/chat/completions" \
  -H "Authorization: Bearer $DEEPSEEK_VK" \
  -H "Content-Type: application/json" \
  -d '{"model": "deepseek-flash", "messages": [{"role": "user", "content": "Hello!"}]}'
echo; echo

echo '# Streaming (mock)'
curl -sN "$GATEWAY_URL/v1/chat/completions" \
  -H "Authorization: Bearer vk_demo" \
  -H "Content-Type: application/json" \
  -d '{"model": "demo-model", "stream": true, "messages": [{"role": "user", "content": "Stream this, please"}]}'
