import factory
from django.contrib.auth import get_user_model

from annotation import services
from annotation.models import Example, Membership


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password("pw-for-tests-only")


def make_project(*, admin=None, labels=("positive", "negative"), **kwargs):
    admin = admin or UserFactory()
    return services.project_create(name=kwargs.pop("name", "Reviews"), labels=list(labels), created_by=admin, **kwargs)


def add_member(project, role=Membership.Role.ANNOTATOR, user=None):
    user = user or UserFactory()
    services.membership_set(project=project, user=user, role=role)
    return user


def add_examples(project, texts):
    return Example.objects.bulk_create(Example(project=project, text=t, text_hash=services.text_hash(t)) for t in texts)
