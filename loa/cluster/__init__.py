"""The cluster's sans-IO building blocks: which node serves which commune (``assign``), the
leader lease's timing (``lease``), fencing tokens (``fencing``), the audio bundle between
nodes (``bundle``) and the control messages (``messages``). No asyncio, socket or time here:
``loa.relay.bus`` moves them over Redis."""
