"""The node's HTTP side: OctoPrint's REST API for slicers, uploads streamed to disk, API keys.

The server decides nothing about the machine: every question and request goes to a `NodeDesk`
(fabnode.web.desk), which the daemon implements by posting events onto the controller's queue.
"""
