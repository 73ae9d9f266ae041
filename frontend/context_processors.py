"""The project navigation bar on every project page (any page whose URL names a project slug)."""

from annotation.selectors import project_and_role

from .console.access import nav_for

# Pages, not APIs: the URL namespaces whose views render frontend/base.html with a project.
PROJECT_PAGE_NAMESPACES = frozenset({"frontend", "console", "earnings", "labor_card", "training-pages"})


def project_nav(request):
    match = getattr(request, "resolver_match", None)
    slug = match.kwargs.get("slug") if match else None
    if not slug or match.namespace not in PROJECT_PAGE_NAMESPACES or not request.user.is_authenticated:
        return {}
    project, role = project_and_role(user=request.user, slug=slug)
    if project is None:
        return {}
    items = nav_for(slug=slug, role=role)
    # The page's own item: the longest link the path starts with (the dashboard's is a prefix of all).
    current = max((i for i in items if request.path.startswith(i.url)), key=lambda i: len(i.url), default=None)
    return {"nav_project": project, "nav_items": items, "nav_current": current.key if current else ""}
