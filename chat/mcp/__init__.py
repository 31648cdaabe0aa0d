"""The chat tools over the Model Context Protocol: Streamable HTTP at `/mcp`, stdio via `manage.py mcp`.

`tools` holds what each tool accepts and does (the REST layer's schemas, services and scoped
managers, in one tenant transaction per call); `server` turns tool calls into MCP results and
streams replies as progress; `http` is the ASGI endpoint in front of the SDK's transport.
"""
