"""The admin console: server-rendered project pages for admins (and read-only for auditors).

Views validate a form, call one service or selector and render; writes happen only in the
apps' services, reads in their selectors or in `console.selectors` (the reads that combine
several apps, which only the top layer may do). Access goes through `access.project_page`.
"""
