"""Django admin for the annotation models, with an import page for each project.

The admin site admits superusers only (config/admin.py): project admins and auditors use
the console. The scoping below (staff see only their projects' rows, change only where they
are an admin) stays as a second fence should the site ever admit staff again. The work itself (examples'
texts, attempts, annotations, import batches) is read-only here: attempts are timed by the
server and annotations feed the append-only labor ledger, so they change only through
annotation.services.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from core.errors import TallyError
from core.roles import READERS

from .imports import formats, jobs
from .imports.progress import FINISHED, import_progress
from .models import Annotation, Attempt, Example, ImportBatch, Label, Membership, Project
from .selectors import role_in_project


def _is_project_admin(user, project: Project) -> bool:
    return role_in_project(user=user, project=project) == Membership.Role.ADMIN


class VisibleProjectFilter(admin.SimpleListFilter):
    """Filter by project, offering only the projects the user may see."""

    title = "project"
    parameter_name = "project"

    def lookups(self, request, model_admin):
        projects = Project.objects.all()
        if not request.user.is_superuser:
            projects = projects.filter(memberships__user=request.user, memberships__role__in=READERS)
        return [(p.pk, p.name) for p in projects.distinct()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(project_id=self.value())
        return queryset


class ProjectScopedAdmin(admin.ModelAdmin):
    """Rows of the projects the user is an admin or auditor of; changes where they are an admin."""

    project_path = "project"  # from this model to its Project

    def _prefix(self) -> str:
        return f"{self.project_path}__" if self.project_path else ""

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        prefix = self._prefix()
        return qs.filter(
            **{f"{prefix}memberships__user": request.user, f"{prefix}memberships__role__in": READERS}
        ).distinct()

    def _project_of(self, obj) -> Project:
        return obj if isinstance(obj, Project) else obj.project

    @staticmethod
    def _reads_some_project(request) -> bool:
        user = request.user
        return user.is_active and user.is_staff and user.memberships.filter(role__in=READERS).exists()

    # Membership is the source of truth: a staff user who is an admin or auditor of a project
    # may view its records here without model permissions (get_queryset keeps them to theirs).
    def has_module_permission(self, request):
        return super().has_module_permission(request) or self._reads_some_project(request)

    def has_view_permission(self, request, obj=None):
        if super().has_view_permission(request, obj):
            return True
        if not self._reads_some_project(request):
            return False
        return obj is None or role_in_project(user=request.user, project=self._project_of(obj)) in READERS

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        if not allowed or obj is None or request.user.is_superuser:
            return allowed
        return _is_project_admin(request.user, self._project_of(obj))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        if not allowed or obj is None or request.user.is_superuser:
            return allowed
        return _is_project_admin(request.user, self._project_of(obj))


class ReadOnlyAdmin(ProjectScopedAdmin):
    """Records of work: visible, never edited or deleted through the admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- projects, with the import page ---------------------------------------------------------


class LabelInline(admin.TabularInline):
    """Labels are renamed here, never deleted (labeled data points at them); they are retired
    in the console (annotation.services.label_retire), which also records when."""

    model = Label
    extra = 0
    fields = ["name", "order", "retired"]
    readonly_fields = ["retired"]
    can_delete = False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["user"]


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV, TSV or JSONL, UTF-8. Imported in the background, all or nothing.")
    file_format = forms.ChoiceField(
        choices=[("", "From the file name")] + list(ImportBatch.Format.choices), required=False, label="Format"
    )
    text_column = forms.CharField(
        initial="text",
        max_length=100,
        help_text="A header name, or several joined by commas (title,description); without a header, "
        "1-based positions (2,3). Joined columns are separated by a space.",
    )
    label_column = forms.CharField(
        required=False,
        max_length=100,
        help_text="Optional gold labels (name or position), matched to the project's label names.",
    )
    no_header = forms.BooleanField(required=False, help_text="The first line is data, not column names.")
    label_map = forms.CharField(
        required=False, help_text="Raw value to label name, e.g. 1=World,2=Sports,3=Business,4=Sci-Tech"
    )
    create_labels = forms.BooleanField(required=False, help_text="Add labels the project does not have yet.")
    unescape_backslashes = forms.BooleanField(
        required=False, help_text="AG News style text: \\\\ is a line break, \\$ a dollar, other \\ a space."
    )
    encoding = forms.CharField(initial="utf-8", max_length=40)


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_path = ""
    list_display = ["name", "slug", "label_mode", "annotations_per_example", "example_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [LabelInline, MembershipInline]
    actions = ["import_examples"]
    change_form_template = "admin/annotation/project/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_examples=Count("examples", distinct=True))

    @admin.display(description="examples", ordering="n_examples")
    def example_count(self, project):
        return project.n_examples

    def has_add_permission(self, request):
        return request.user.is_superuser or request.user.has_perm("annotation.add_project")

    # Fields the labels already given (and, in labor_ledger's admin, the ledger) depend on.
    def fixed_fields(self, obj) -> set[str]:
        """The label mode once the project has labels (as annotation.services.project_update)."""
        return {"label_mode"} if obj is not None and obj.annotations.exists() else set()

    def get_readonly_fields(self, request, obj=None):
        fixed = self.fixed_fields(obj)
        return [
            *super().get_readonly_fields(request, obj),
            *(f for f in ("slug", "currency", "label_mode") if f in fixed),
        ]

    def get_prepopulated_fields(self, request, obj=None):
        return {} if "slug" in self.fixed_fields(obj) else super().get_prepopulated_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:  # as annotation.services.project_create does: the creator administers it
            Membership.objects.get_or_create(project=obj, user=request.user, defaults={"role": Membership.Role.ADMIN})

    def get_urls(self):
        return [
            path(
                "<int:project_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="annotation_project_import",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Import examples into the selected project")
    def import_examples(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one project to import into.", messages.WARNING)
            return None
        return redirect("admin:annotation_project_import", project_id=queryset.get().pk)

    def import_view(self, request, project_id: int):
        project = get_object_or_404(self.get_queryset(request), pk=project_id)
        if not _is_project_admin(request.user, project):
            raise PermissionDenied("Only the project's admins import examples.")
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                options = formats.import_options(
                    source_name=data["file"].name,
                    file_format=data["file_format"],
                    text_column=data["text_column"],
                    label_column=data["label_column"],
                    has_header=not data["no_header"],
                    label_map=data["label_map"],
                    create_labels=data["create_labels"],
                    unescape_backslashes=data["unescape_backslashes"],
                    encoding=data["encoding"],
                )
                batch, _ = jobs.import_upload(
                    project=project, created_by=request.user, upload=data["file"], options=options
                )
            except TallyError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request, f"Import {batch.pk} of {batch.source_name} is queued; this page follows its progress."
                )
                return redirect("admin:annotation_importbatch_change", batch.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import examples into {project.name}",
            "opts": self.model._meta,
            "project": project,
            "form": form,
            "labels": list(project.labels.values_list("name", flat=True)),
            "recent": ImportBatch.objects.filter(project=project).select_related("created_by")[:10],
        }
        return TemplateResponse(request, "admin/annotation/project/import_form.html", context)


@admin.register(Label)
class LabelAdmin(ProjectScopedAdmin):
    """Renamed here, never deleted (annotations, gold labels and manifests point at them)."""

    list_display = ["name", "project", "order", "retired"]
    list_filter = [VisibleProjectFilter, "retired"]
    search_fields = ["name"]
    raw_id_fields = ["project"]
    readonly_fields = ["retired", "retired_at"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = [VisibleProjectFilter, "role"]
    search_fields = ["user__username", "project__name"]
    raw_id_fields = ["user", "project"]


# --- imports and the work: read-only -----------------------------------------------------------


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "source_name",
        "project",
        "status",
        "rows_read",
        "rows_imported",
        "rows_duplicate",
        "rows_skipped",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = [VisibleProjectFilter, "status"]
    list_select_related = ["project", "created_by"]
    search_fields = ["source_name"]
    change_form_template = "admin/annotation/importbatch/change_form.html"
    fields = [
        "project",
        "source_name",
        "status",
        "progress",
        "error",
        "rows_read",
        "rows_imported",
        "rows_duplicate",
        "rows_skipped",
        "reasons",
        "file_format",
        "text_column",
        "label_column",
        "options",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "idempotency_key",
        "report_table",
    ]
    readonly_fields = fields

    @admin.display(description="progress")
    def progress(self, batch):
        data = import_progress(batch=batch)
        if not data:
            return "-" if batch.status in FINISHED else "waiting for a worker"
        share = f"{data['fraction']:.0%} of the file, " if data.get("fraction") is not None else ""
        stalled = " - STALLED: no progress for a while (worker gone?)" if data.get("stalled") else ""
        return (
            f"{share}{data['rows_read']:,} rows read: {data['rows_imported']:,} new (not yet committed), "
            f"{data['rows_duplicate']:,} duplicate, {data['rows_skipped']:,} skipped{stalled}"
        )

    @admin.display(description="by reason")
    def reasons(self, batch):
        reasons = (batch.stats or {}).get("reasons") or {}
        return ", ".join(f"{code}: {n:,}" for code, n in reasons.items()) or "-"

    @admin.display(description="per-row report")
    def report_table(self, batch):
        if not batch.report:
            return "-"
        omitted = (batch.stats or {}).get("report_omitted", 0)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e["row"], e["line"], e["code"], e["reason"]) for e in batch.report),
        )
        note = format_html("<p>{} more not listed (counted by reason above).</p>", omitted) if omitted else ""
        return format_html(
            "<table><thead><tr><th>row</th><th>line</th><th>code</th><th>reason</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            note,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = self.get_object(request, object_id)
        running = batch is not None and batch.status not in FINISHED
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "refresh": running})


@admin.register(Example)
class ExampleAdmin(ReadOnlyAdmin):
    list_display = ["id", "short_text", "project", "gold_label", "submitted_count", "priority", "import_batch"]
    list_filter = [VisibleProjectFilter]
    list_select_related = ["project", "gold_label", "import_batch"]
    search_fields = ["text"]
    show_full_result_count = False  # no second COUNT(*) over a large project

    @admin.display(description="text")
    def short_text(self, example):
        return example.text[:80] + ("..." if len(example.text) > 80 else "")


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "example_id",
        "annotator",
        "status",
        "claimed_at",
        "finished_at",
        "active_seconds",
        "wall_seconds",
    ]
    list_filter = [VisibleProjectFilter, "status"]
    list_select_related = ["project", "annotator"]
    search_fields = ["annotator__username"]
    show_full_result_count = False


@admin.register(Annotation)
class AnnotationAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "example_id", "annotator", "status", "source", "created_at"]
    list_filter = [VisibleProjectFilter, "status", "source"]
    list_select_related = ["project", "annotator"]
    search_fields = ["annotator__username"]
    show_full_result_count = False
